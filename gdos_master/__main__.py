from gdos_master.cli import main

raise SystemExit(main())
