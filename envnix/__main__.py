"""python -m envnix"""

from envnix.cli import main

main()
