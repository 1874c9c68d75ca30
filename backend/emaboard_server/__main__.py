from emaboard_server.cli import main

raise SystemExit(main())
