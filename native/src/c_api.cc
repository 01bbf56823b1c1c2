#include "spoof/spoof.h"
#include "spoof_version.h"
extern "C" {
int32_t spoof_abi_version(void) { return SPOOF_ABI_VERSION; }
const char* spoof_version_string(void) { return SPOOF_VERSION_STRING; }
}
