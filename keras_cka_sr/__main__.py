"""`python -m keras_cka_sr`: the main job, as the `keras-cka-sr` command (the package's
import already took the quiet start-up: `keras_cka_sr._startup`)."""

import sys

from keras_cka_sr.app.cli import main

sys.exit(main())
