/* kvlua: the runtime running a Lua script file (tests and tools that need
 * kv.loop's sockets): kvlua script.lua [args...] */
#include "../lua/runtime.h"

int main(int argc, char **argv)
{
    return kv_runtime_main("kv.script", argc, argv, NULL);
}
