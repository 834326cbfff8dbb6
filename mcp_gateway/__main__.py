"""`python -m mcp_gateway ...` runs the `mcp_gateway` executable (see mcp_gateway/main.py)."""
from mcp_gateway.main import main

raise SystemExit(main())
