"""gRPC plumbing shared by the five services: server bootstrap, error mapping, code generation."""
