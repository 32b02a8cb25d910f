from polyhead.cli import main

main()
