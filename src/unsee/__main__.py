from unsee.cli import main

main()
