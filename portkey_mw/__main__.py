from portkey_mw.cli import main

raise SystemExit(main())
