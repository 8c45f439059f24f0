/* Built by tests/install.rs against an installed prefix (-lcpg -levs). */
#include <stdio.h>
#include <corosync/cpg.h>
#include <corosync/evs.h>

int main(void)
{
	cpg_handle_t h;
	evs_handle_t e;
	cpg_callbacks_t cbs = { NULL, NULL };
	evs_callbacks_t ecbs = { NULL, NULL };
	cs_error_t r1 = cpg_initialize(&h, &cbs);
	cs_error_t r2 = evs_initialize(&e, &ecbs);

	printf("cpg_initialize=%d\n", (int)r1);
	printf("evs_initialize=%d\n", (int)r2);
	printf("strerror=%s\n", cs_strerror(r1));
	return 0;
}
