"""python -m caffe_temperature.bench"""

import sys

from caffe_temperature.bench.cli import main

sys.exit(main())
