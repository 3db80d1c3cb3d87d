from sla.cli import main

main()
