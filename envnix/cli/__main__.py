from envnix.cli import main

main()
