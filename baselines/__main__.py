from baselines.cli import main

raise SystemExit(main())
