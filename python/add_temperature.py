#!/usr/bin/env python3
"""Give a deploy net's Softmax a temperature: see caffe_temperature/add_temperature_cli.py.

    python/add_temperature.py deploy.prototxt --T 40 -o deploy_T40.prototxt
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from caffe_temperature.add_temperature_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
