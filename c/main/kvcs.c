/* kvcs: the runtime plus its Lua entry module (kvcs.main). */
#include "../lua/runtime.h"

int main(int argc, char **argv)
{
    return kv_runtime_main("kvcs.main", argc, argv, NULL);
}
