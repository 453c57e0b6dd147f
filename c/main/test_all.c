/* test_all: the runtime plus its Lua entry module (tools.test_all). */
#include "../lua/runtime.h"

int main(int argc, char **argv)
{
    return kv_runtime_main("tools.test_all", argc, argv, NULL);
}
