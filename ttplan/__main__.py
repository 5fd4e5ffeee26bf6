"""`python -m ttplan`: the same command as `ttplan`."""

from ttplan.cli import main

main()
