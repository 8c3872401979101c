from dist_train.train import main

raise SystemExit(main())
