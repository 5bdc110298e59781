"""Generated from protos/skysift/v1 by `make proto`; do not edit."""
