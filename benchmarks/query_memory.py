"""Peak memory of one query per method over a large candidate pool (K = 1000 classes).

    python benchmarks/query_memory.py [--candidates 100000 ...] [--methods entropy bald ...]
                                      [--tavaal-root PATH] [--out FILE.jsonl]

See benchmarks/README.md ("Query memory"); the code is benchmarks/tavaal_bench/query_memory.py.
"""

from tavaal_bench.query_memory import main

if __name__ == "__main__":
    main()
