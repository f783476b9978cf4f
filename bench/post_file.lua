-- bench/post_file.lua: wrk script that POSTs one fixed body, read from the
-- file named by the environment variable BENCH_BODY_FILE, with Content-Type
-- application/secevent+jwt (the limit of scenario push_send: what the
-- receiver takes from wrk).
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/secevent+jwt"
wrk.headers["Accept"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench"
