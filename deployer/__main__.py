"""``python -m deployer``: the same as the ``deployer`` command."""

from __future__ import annotations

from deployer.cli import main

if __name__ == "__main__":
    main()
