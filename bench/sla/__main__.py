from bench.sla.bench_exporter import main

raise SystemExit(main())
