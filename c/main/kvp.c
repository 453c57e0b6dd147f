/* kvp: the runtime, the C data path (kvp.dp) and the Lua control plane
 * (kvp.main). */
#include "../lua/runtime.h"
#include "../proxy/proxy.h"

int main(int argc, char **argv)
{
    return kv_runtime_main("kvp.main", argc, argv, kvp_open_lua);
}
