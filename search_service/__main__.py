"""`python -m search_service ...`: the `search-service` command, where its script is not installed."""

from search_service.cli import main

if __name__ == "__main__":
    main()
