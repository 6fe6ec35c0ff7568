// `weft`: command-line client of the local weft agent (weftd).
#include "tools/cli.h"

int main(int argc, char** argv) { return weft::tools::run_cli(argc, argv); }
