"""``python -m services.dashboard`` serves the dashboard;
``python -m services.dashboard hash-password`` prints a password hash for DASHBOARD_USERS."""

import getpass
import sys

from services.dashboard.app import run
from services.dashboard.auth import hash_password

if sys.argv[1:2] == ["hash-password"]:
    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("password: ")
    print(hash_password(password))
else:
    run()
