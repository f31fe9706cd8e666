"""The main job, `keras-cka-sr train`: an application built on the library, not part of it.

`cli` (the command line: parsing, signals, printing), `study` (the grid of runs, run keys,
resume, the results file), `run_config` (`RunConfig`, one declaration per option),
`experiment` (one run: plan, train, `RunResult`), `methods` (the training-method
registry), `datasets`, `zoo` (models with their taps), `recipes` (optimizers, schedules,
weight decay), `plots`, `report` (the table), `statistics` (paired tests, Holm) and `builders` (`Registry`:
name -> builder, where users add a data set, a model or a method). The library
(`keras_cka_sr` outside this folder) never imports it.
"""
