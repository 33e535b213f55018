from pocketsam.cli import main

raise SystemExit(main())
