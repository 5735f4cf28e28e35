/* Lists of names (base/names.h). */
#include "base/names.h"

#include <string.h>

bool gw_names_has(char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}
