from streamr_node.cli import main

main()
