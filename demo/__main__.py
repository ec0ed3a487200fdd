"""``python -m demo --customers N --seed S --out DIR``: generate the synthetic storefront."""

from demo.generator import main

main()
