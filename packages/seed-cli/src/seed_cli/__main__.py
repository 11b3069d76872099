from seed_cli.main import main

main()
