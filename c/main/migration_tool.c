/* migration_tool: the runtime plus its Lua entry module (tools.migration_tool). */
#include "../lua/runtime.h"

int main(int argc, char **argv)
{
    return kv_runtime_main("tools.migration_tool", argc, argv, NULL);
}
