from aibrix.downloader.cli import main

main()
