"""Worker jobs: each periodic job holds a lease, so any number of workers share them safely."""
