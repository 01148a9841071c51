from __future__ import annotations

import sys

from nasctl_agent.cli import main

sys.exit(main())
