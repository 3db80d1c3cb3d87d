from bench.snowplow.bench_collector import main

raise SystemExit(main())
