from __future__ import annotations

import sys

from acla_nas.cli.main import main

sys.exit(main())
