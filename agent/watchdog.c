#include <stdbool.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "watchdog.h"

void agent_watchdog_ping(agent *a) {
        static bool withheld;
        if (a->audit && audit_failed(a->audit)) {
                if (!withheld) {
                        withheld = true;
                        log_error("the audit log has failed for good: watchdog pings stop, so that the service "
                                  "manager restarts the agent");
                        sd_notify(0, "STATUS=the audit log has failed: every Sign is refused until a restart; "
                                     "watchdog pings stopped");
                }
                return;
        }
        sd_notify(0, "WATCHDOG=1");
}
