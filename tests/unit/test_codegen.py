from skysift.rpc import codegen


def test_generated_code_matches_protos():
    stale = codegen.stale_files()
    assert stale == [], f"generated gRPC code is stale, run `make proto`: {stale}"
