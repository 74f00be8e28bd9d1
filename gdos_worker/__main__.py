from gdos_worker.cli import main

raise SystemExit(main())
