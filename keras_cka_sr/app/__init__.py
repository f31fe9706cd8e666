"""The main job, `keras-cka-sr train`: an application built on the library, not part of it.

`cli` (the command line), `experiment` (one run: model, method, CKA-SR, training),
`datasets`, `zoo` (models with their taps), `recipes` (optimizers, schedules, weight
decay), `plots`, `report` (statistics and the results file) and `builders` (`Registry`:
name -> builder, where users add a data set, a model or a method). The library
(`keras_cka_sr` outside this folder) never imports it.
"""
