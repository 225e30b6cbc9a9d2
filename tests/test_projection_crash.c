#include "tt.h"
int main(int argc, char **argv) { tt_init(argc, argv); return tt_done(); }
