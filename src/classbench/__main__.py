from classbench.cli import main

main()
