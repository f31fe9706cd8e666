import sys

from keras_cka_sr.app.cli import main

sys.exit(main())
