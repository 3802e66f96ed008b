skillpack_test(router/router_test sp_router)
