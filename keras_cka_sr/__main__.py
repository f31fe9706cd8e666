import sys

from keras_cka_sr.cli import main

sys.exit(main())
