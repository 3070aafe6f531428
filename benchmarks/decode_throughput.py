"""Decoding throughput of a dataset read from its JPEG files (ImageNet's storage).

    python benchmarks/decode_throughput.py [--images 600] [--workers 1 2] [--size 224]
                                           [--batch 64] [--out FILE.json]

See benchmarks/README.md ("Decoding throughput"); the code is
benchmarks/tavaal_bench/decode.py.
"""

from tavaal_bench.decode import main

if __name__ == "__main__":
    main()
