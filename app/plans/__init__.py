"""Plan runs: a plan or playbook executed by the server, step by step."""
