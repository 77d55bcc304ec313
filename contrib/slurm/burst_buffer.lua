-- SPDX-License-Identifier: Apache-2.0
--
-- quai's stage-in and stage-out for Slurm's burst_buffer/lua plugin
-- (Slurm 22.05 and later). Install it as burst_buffer.lua beside
-- slurm.conf, with BurstBufferType=burst_buffer/lua and, in
-- burst_buffer.conf, Directive=BB_LUA. docs/slurm.md says the whole story.
--
-- A job asks for its data in the leading comment block of its script:
--
--   #BB_LUA quai pull [--unpack] quai://io1/tokens $QUAI_STAGE/tokens
--   #BB_LUA quai push $QUAI_STAGE/ckpt quai://io1/ckpt-$SLURM_JOB_ID
--
-- slurm_bb_job_process  (at submit, inside slurmctld: parsing only)
--                       checks every directive; a bad one rejects sbatch.
-- slurm_bb_setup        records the job's uid and gid (the only hook that
--                       gets them in 22.05), makes the job's staging area.
-- slurm_bb_data_in      quai pull, as the job's user: the job waits in
--                       stage-in; a failure holds it with quai's message.
--                       A copy already there and verified is kept.
-- slurm_bb_paths        gives the job QUAI_STAGE.
-- slurm_bb_data_out     quai push, as the job's user, after the job.
-- slurm_bb_job_teardown overwrites every file of the staging area with
--                       zeros, removes it and the job's record; for a
--                       requeued job (pending again) it keeps them.
--
-- Site settings come from /etc/quai/slurm-bb.conf ($QUAI_BB_CONF in
-- slurmctld's environment overrides the path): key = value lines.

local conf_path = os.getenv("QUAI_BB_CONF") or "/etc/quai/slurm-bb.conf"

local defaults = {
	quai = "/usr/bin/quai",          -- the quai program
	stage_root = "/var/lib/quai/bb", -- jobs' staging areas: ROOT/job-ID
	state_dir = "/var/lib/quai/bb-state", -- one record per job (uid, gid)
	quai_conf = "",                  -- QUAI_CONF for the hooks' quai
	munge_socket = "",               -- QUAI_MUNGE_SOCKET for them
	hosts = "",                      -- quaid hosts jobs may name (blank: any)
	setpriv = "/usr/bin/setpriv",
	shred = "/usr/bin/shred",
	scontrol = "/usr/bin/scontrol",
	squeue = "/usr/bin/squeue",
}

local function trim(s)
	return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- The site configuration, or nil and why.
local function load_conf()
	local c = {}
	for k, v in pairs(defaults) do
		c[k] = v
	end
	local f = io.open(conf_path, "r")
	if not f then
		return c -- every key at its default
	end
	local n = 0
	for line in f:lines() do
		n = n + 1
		local t = trim(line)
		if t ~= "" and t:sub(1, 1) ~= "#" then
			local k, v = t:match("^([%w_]+)%s*=%s*(.-)$")
			if not k then
				f:close()
				return nil, string.format("%s:%d: not a 'key = value' line", conf_path, n)
			end
			if defaults[k] == nil then
				f:close()
				return nil, string.format("%s:%d: unknown key '%s'", conf_path, n, k)
			end
			c[k] = v
		end
	end
	f:close()
	for _, k in ipairs({ "stage_root", "state_dir" }) do
		if c[k]:sub(1, 1) ~= "/" then
			return nil, string.format("%s: %s must be an absolute path", conf_path, k)
		end
	end
	c.host_set = nil
	if c.hosts ~= "" then
		c.host_set = {}
		for h in c.hosts:gmatch("[^,%s]+") do
			c.host_set[h] = true
		end
	end
	return c
end

-- ---- parsing the directives (fast: runs inside slurmctld) ---------------

-- ${SLURM_JOB_ID} and $SLURM_JOB_ID (not $SLURM_JOB_IDX) become job_id.
local function expand_jobid(s, job_id)
	s = s:gsub("%${SLURM_JOB_ID}", job_id)
	s = s:gsub("%$SLURM_JOB_ID([%w_]?)", function(next_char)
		if next_char == "" then
			return job_id
		end
		return nil -- another variable: left as it is (and refused)
	end)
	return s
end

local function check_uri(u, conf, allow_jobid)
	local rest = u:match("^quai://(.*)$")
	if not rest then
		return "'" .. u .. "' is not a quai:// URI (quai://HOST[:PORT]/NAME)"
	end
	local hostport, name = rest:match("^([^/]*)/(.*)$")
	if not hostport then
		return "'" .. u .. "': no dataset name (quai://HOST[:PORT]/NAME)"
	end
	local host, port
	if hostport:sub(1, 1) == "[" then
		host, port = hostport:match("^(%[[^%]]+%])(.*)$")
	else
		host, port = hostport:match("^([^:]*)(.*)$")
	end
	if not host or host == "" then
		return "'" .. u .. "': no host"
	end
	if host:match("^%[") then
		if not host:match("^%[[%x:%.]+%]$") and not host:match("^%[[%x:%.]+%%[%w%.%-_]+%]$") then
			return "'" .. u .. "': '" .. host .. "' is not an IPv6 address in brackets"
		end
	elseif not host:match("^[%w%.%-_]+$") then
		return "'" .. u .. "': '" .. host .. "' is not a host name or address"
	end
	if port ~= "" then
		local p = port:match("^:(%d+)$")
		if not p or tonumber(p) < 1 or tonumber(p) > 65535 then
			return "'" .. u .. "': the port must be a number 1..65535"
		end
	end
	if allow_jobid then
		name = expand_jobid(name, "1")
	end
	if name == "" or #name > 255 or name:find("/") or name == "." or name == ".."
	    or not name:match("^[%w%._%-]+$") then
		return "'" .. u .. "': the dataset name must be one path component of "
		    .. "letters, digits, '.', '_', '-' (at most 255 bytes)"
	end
	if conf.host_set and not conf.host_set[host] then
		return "'" .. u .. "': host " .. host .. " is not one of this site's quaid hosts ("
		    .. conf.hosts .. ")"
	end
	return nil
end

-- A path in the job's staging area: $QUAI_STAGE/REL, REL of plain names.
local function check_stage_path(p, what)
	local rel = p:match("^%$QUAI_STAGE/(.+)$") or p:match("^%${QUAI_STAGE}/(.+)$")
	if not rel then
		return what .. " '" .. p .. "' is outside the job's staging area: write "
		    .. "$QUAI_STAGE/NAME (the sovereign burst-buffer path quai pulls into)"
	end
	for comp in (rel .. "/"):gmatch("([^/]*)/") do
		if comp == "" or comp == "." or comp == ".." or not comp:match("^[%w%._%-]+$") then
			return what .. " '" .. p .. "': each part after $QUAI_STAGE/ must be a plain "
			    .. "name of letters, digits, '.', '_', '-' (no '..', no empty part)"
		end
	end
	return nil, rel
end

-- The directives of a job script: a list of {op=, uri=, rel=, unpack=, line=},
-- or nil and the reason (naming the line).
local function parse_script(path, conf)
	local f, err = io.open(path, "r")
	if not f then
		return nil, "cannot read the job script: " .. tostring(err)
	end
	local list, pulls = {}, {}
	local n = 0
	for line in f:lines() do
		n = n + 1
		if n > 1 and line:sub(1, 1) ~= "#" then
			break -- Slurm reads directives from the leading comments only
		end
		local body = line:match("^#BB_LUA%s*(.*)$")
		if body then
			local w = {}
			for tok in body:gmatch("%S+") do
				w[#w + 1] = tok
			end
			local where = string.format("line %d: ", n)
			local function bad(msg)
				f:close()
				return nil, "quai burst buffer: " .. where .. msg
			end
			if w[1] ~= "quai" or (w[2] ~= "pull" and w[2] ~= "push") then
				return bad("expected 'quai pull URI $QUAI_STAGE/NAME' or "
				    .. "'quai push $QUAI_STAGE/NAME URI'")
			end
			local d = { op = w[2], line = n }
			local i = 3
			if d.op == "pull" and w[i] == "--unpack" then
				d.unpack = true
				i = i + 1
			end
			if #w ~= i + 1 then
				return bad("quai " .. d.op .. " takes "
				    .. (d.op == "pull" and "[--unpack] URI $QUAI_STAGE/NAME"
					or "$QUAI_STAGE/NAME URI") .. ", " .. (#w - i + 1)
				    .. " operand(s) given")
			end
			local e
			if d.op == "pull" then
				d.uri = w[i]
				e = check_uri(d.uri, conf, false)
				if e then return bad(e) end
				e, d.rel = check_stage_path(w[i + 1], "destination")
				if e then return bad(e) end
				if pulls[d.rel] then
					return bad("destination $QUAI_STAGE/" .. d.rel
					    .. " is already pulled into on line " .. pulls[d.rel])
				end
				pulls[d.rel] = n
			else
				e, d.rel = check_stage_path(w[i], "source")
				if e then return bad(e) end
				d.uri = w[i + 1]
				e = check_uri(d.uri, conf, true)
				if e then return bad(e) end
			end
			list[#list + 1] = d
		end
	end
	f:close()
	return list
end

-- ---- running quai as the job's user (asynchronous hooks only) -----------

local function q(s)
	return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function stage_dir(conf, job_id)
	-- Slurm's job ids are numbers; anything else must not reach a path.
	assert(tostring(job_id):match("^%d+$"), "quai burst buffer: bad job id")
	return conf.stage_root .. "/job-" .. job_id
end

local function record_path(conf, job_id)
	assert(tostring(job_id):match("^%d+$"), "quai burst buffer: bad job id")
	return conf.state_dir .. "/job-" .. job_id
end

-- Runs a shell command; returns its exit status and its output.
local function sh(cmd)
	local p = io.popen(cmd .. " 2>&1; echo \"quai-bb-status=$?\"", "r")
	local out = p:read("*a")
	p:close()
	local status = tonumber(out:match("quai%-bb%-status=(%d+)%s*$")) or 255
	out = out:gsub("quai%-bb%-status=%d+%s*$", "")
	return status, out
end

local function last_line(s)
	local last = ""
	for l in s:gmatch("[^\n]+") do
		last = l
	end
	return last
end

-- The job's owner, and its restart count when it was staged, as setup
-- recorded them.
local function owner(conf, job_id)
	local f = io.open(record_path(conf, job_id), "r")
	if not f then
		return nil
	end
	local uid, gid, restarts = f:read("*a"):match("^(%d+) (%d+) (%d+)")
	f:close()
	if not uid then
		return nil
	end
	return uid, gid, tonumber(restarts)
end

-- The job's restart count and state, from slurmctld (asynchronous hooks
-- only: this is an RPC), or nil.
local function job_restarts(conf, job_id)
	local st, info = sh(q(conf.scontrol) .. " -o show job " .. job_id)
	if st ~= 0 then
		return nil
	end
	local restarts = tonumber(info:match(" Restarts=(%d+)"))
	return restarts, info:match(" JobState=(%S+)")
end

-- PROGRAM ARGS as the job's user, in the site's quai environment.
local function run_as_user(conf, uid, gid, program, args)
	local env = "env LC_ALL=C HOME=/"
	if conf.quai_conf ~= "" then
		env = env .. " QUAI_CONF=" .. q(conf.quai_conf)
	end
	if conf.munge_socket ~= "" then
		env = env .. " QUAI_MUNGE_SOCKET=" .. q(conf.munge_socket)
	end
	local cmd = q(conf.setpriv) .. " --reuid=" .. uid .. " --regid=" .. gid
	    .. " --init-groups " .. env .. " " .. q(program)
	for _, a in ipairs(args) do
		cmd = cmd .. " " .. q(a)
	end
	return sh("cd / && " .. cmd .. " </dev/null")
end

-- quai ARGS as the job's user.
local function as_user(conf, uid, gid, args)
	return run_as_user(conf, uid, gid, conf.quai, args)
end


-- One pull directive of data_in: true, or false and the reason.
local function pull_one(conf, job_id, uid, gid, dir, d)
	local dest = dir .. "/" .. d.rel
	local status, out
	-- Already there (a requeued job, a second try): kept when it verifies
	-- whole, else removed and pulled afresh.
	-- Everything in the staging area is done as the job's user: it owns the
	-- area and may have put links in it.
	if run_as_user(conf, uid, gid, "/usr/bin/test", { "-e", dest }) == 0 then
		if d.unpack then
			-- quai pull --unpack publishes DEST whole (a rename) or not at
			-- all, and unpacked records carry no checksums to check again.
			slurm.log_info("quai burst buffer: job %s: %s already unpacked in %s: not pulled again",
			    job_id, d.uri, dest)
			return true
		else
			status, out = as_user(conf, uid, gid, { "verify", "-q", dest })
		end
		if status == 0 then
			slurm.log_info("quai burst buffer: job %s: %s already in %s and verified: not pulled again",
			    job_id, d.uri, dest)
			return true
		end
		slurm.log_info("quai burst buffer: job %s: %s in %s fails verify, pulled again: %s",
		    job_id, d.uri, dest, last_line(out))
		status, out = run_as_user(conf, uid, gid, "/bin/rm", { "-rf", dest })
		if status ~= 0 then
			return false, "cannot remove " .. dest .. ": " .. last_line(out)
		end
	end
	local parent = dest:match("^(.*)/[^/]+$")
	if parent ~= dir then
		status, out = run_as_user(conf, uid, gid, "/bin/mkdir", { "-p", parent })
		if status ~= 0 then
			return false, "cannot make " .. parent .. ": " .. last_line(out)
		end
	end
	local args = { "pull", "-q" }
	if d.unpack then
		args[#args + 1] = "--unpack"
	end
	args[#args + 1] = d.uri
	args[#args + 1] = dest
	status, out = as_user(conf, uid, gid, args)
	if status ~= 0 then
		return false, "quai pull " .. d.uri .. " failed (exit " .. status .. "): "
		    .. last_line(out)
	end
	slurm.log_info("quai burst buffer: job %s: pulled %s into %s", job_id, d.uri, dest)
	return true
end

-- Zeros over every byte staged in job_id's area (sensitive data included)
-- before the names go, written as the area's user (the area is the
-- user's: a root shred could be sent through a symbolic link planted
-- meanwhile); then the directory (rm does not follow links) and the job's
-- record. Idempotent. Returns true, or false and why.
local function wipe_area(conf, job_id)
	local dir = stage_dir(conf, job_id)
	if sh("test -d " .. q(dir)) == 0 then
		local uid, gid = owner(conf, job_id)
		if not uid then
			local _, ids = sh("stat -c '%u %g' " .. q(dir))
			uid, gid = ids:match("^(%d+) (%d+)")
		end
		if uid then
			local status, out = run_as_user(conf, uid, gid, "/usr/bin/find",
			    { dir, "-type", "f", "-exec", conf.shred, "-f", "-n", "0", "-z", "{}", "+" })
			if status ~= 0 then
				slurm.log_error("quai burst buffer: job %s: zeroing %s: %s", job_id, dir,
				    last_line(out))
			end
		end
	end
	local status, out = sh("rm -rf " .. q(dir) .. " && rm -f " .. q(record_path(conf, job_id)))
	if status ~= 0 then
		return false, "quai burst buffer: teardown of " .. dir .. ": " .. last_line(out)
	end
	return true
end

-- Staging areas of jobs Slurm no longer knows (a job cancelled in a
-- window where Slurm runs no teardown, say): wiped. Only when squeue
-- answers and lists job_id itself, so that a failed query wipes nothing.
local function sweep_stale(conf, job_id)
	local st, out = sh(q(conf.squeue) .. " -h --states=all -o %A")
	if st ~= 0 then
		return
	end
	local known = {}
	for id in out:gmatch("%d+") do
		known[id] = true
	end
	if not known[tostring(job_id)] then
		return
	end
	local _, names = sh("ls -1 " .. q(conf.stage_root))
	for id in names:gmatch("job%-(%d+)") do
		if not known[id] then
			slurm.log_info("quai burst buffer: %s/job-%s belongs to no job Slurm knows: wiped",
			    conf.stage_root, id)
			wipe_area(conf, id)
		end
	end
end

-- ---- the hooks -------------------------------------------------------------

function slurm_bb_job_process(job_script)
	local conf, err = load_conf()
	if not conf then
		return slurm.ERROR, "quai burst buffer: " .. err
	end
	local list
	list, err = parse_script(job_script, conf)
	if not list then
		return slurm.ERROR, err
	end
	if #list == 0 then
		return slurm.ERROR, "quai burst buffer: no 'quai pull' or 'quai push' directive"
	end
	return slurm.SUCCESS
end

function slurm_bb_pools()
	-- quai's staging needs no capacity accounting: one pool, never short.
	return slurm.SUCCESS,
	    '{"pools":[{"id":"quai","quantity":1099511627776,"granularity":1}]}'
end

function slurm_bb_setup(job_id, uid, gid, pool, bb_size, job_script)
	local conf, err = load_conf()
	if not conf then
		return slurm.ERROR, "quai burst buffer: " .. err
	end
	if not tostring(uid):match("^%d+$") or not tostring(gid):match("^%d+$") then
		return slurm.ERROR, "quai burst buffer: setup got no uid/gid for job " .. job_id
	end
	local dir = stage_dir(conf, job_id)
	local restarts = job_restarts(conf, job_id)
	if not restarts then
		return slurm.ERROR, "quai burst buffer: cannot read job " .. job_id
		    .. "'s restart count from scontrol"
	end
	local status, out = sh("umask 077 && mkdir -p " .. q(conf.state_dir) .. " "
	    .. q(conf.stage_root) .. " && chmod 0755 " .. q(conf.stage_root)
	    .. " && printf '%s %s %s\\n' " .. uid .. " " .. gid .. " " .. restarts .. " > "
	    .. q(record_path(conf, job_id) .. ".tmp") .. " && mv -f "
	    .. q(record_path(conf, job_id) .. ".tmp") .. " " .. q(record_path(conf, job_id))
	    .. " && { [ -d " .. q(dir) .. " ] || mkdir -m 0700 " .. q(dir) .. "; }"
	    .. " && chown " .. uid .. ":" .. gid .. " " .. q(dir))
	if status ~= 0 then
		return slurm.ERROR, "quai burst buffer: cannot make the staging area " .. dir
		    .. " for uid " .. uid .. " (slurmctld must run as root): " .. last_line(out)
	end
	sweep_stale(conf, job_id)
	return slurm.SUCCESS
end

function slurm_bb_data_in(job_id, job_script)
	local conf, err = load_conf()
	if not conf then
		return slurm.ERROR, "quai burst buffer: " .. err
	end
	local uid, gid = owner(conf, job_id)
	if not uid then
		return slurm.ERROR, "quai burst buffer: no record of job " .. job_id
		    .. "'s user (setup did not run)"
	end
	local list
	list, err = parse_script(job_script, conf)
	if not list then
		return slurm.ERROR, err
	end
	local dir = stage_dir(conf, job_id)
	for _, d in ipairs(list) do
		if d.op == "pull" then
			local ok, msg = pull_one(conf, job_id, uid, gid, dir, d)
			if not ok then
				return slurm.ERROR, msg
			end
		end
	end
	return slurm.SUCCESS
end

function slurm_bb_real_size(job_id)
	return slurm.SUCCESS
end

function slurm_bb_paths(job_id, job_script, path_file)
	local conf, err = load_conf()
	if not conf then
		return slurm.ERROR, "quai burst buffer: " .. err
	end
	local f
	f, err = io.open(path_file, "w")
	if not f then
		return slurm.ERROR, "quai burst buffer: " .. tostring(err)
	end
	f:write("QUAI_STAGE=" .. stage_dir(conf, job_id) .. "\n")
	f:close()
	return slurm.SUCCESS
end

function slurm_bb_pre_run(job_id, job_script)
	return slurm.SUCCESS
end

function slurm_bb_post_run(job_id, job_script)
	return slurm.SUCCESS
end

function slurm_bb_data_out(job_id, job_script)
	local conf, err = load_conf()
	if not conf then
		return slurm.ERROR, "quai burst buffer: " .. err
	end
	local uid, gid = owner(conf, job_id)
	if not uid then
		return slurm.ERROR, "quai burst buffer: no record of job " .. job_id .. "'s user"
	end
	local list
	list, err = parse_script(job_script, conf)
	if not list then
		return slurm.ERROR, err
	end
	local dir = stage_dir(conf, job_id)
	local failed = nil
	for _, d in ipairs(list) do
		if d.op == "push" then
			local src = dir .. "/" .. d.rel
			local uri = expand_jobid(d.uri, job_id)
			local status, out = as_user(conf, uid, gid, { "push", "-q", src, uri })
			if status ~= 0 then
				-- Try every push; report the first failure.
				failed = failed or ("quai push " .. src .. " " .. uri .. " failed (exit "
				    .. status .. "): " .. last_line(out))
				slurm.log_error("quai burst buffer: job %s: %s", job_id, failed)
			else
				slurm.log_info("quai burst buffer: job %s: pushed %s to %s", job_id, src, uri)
			end
		end
	end
	if failed then
		return slurm.ERROR, failed
	end
	return slurm.SUCCESS
end

function slurm_bb_job_teardown(job_id, job_script, hurry)
	local conf, err = load_conf()
	if not conf then
		return slurm.ERROR, "quai burst buffer: " .. err
	end
	local dir = stage_dir(conf, job_id)
	-- Slurm tears a requeued job's buffer down too, then stages it in again
	-- (22.05: job_completion_logger), and to the hook the two teardowns
	-- look alike but for the job's restart count: one above the count
	-- setup recorded for this staging, on a job not ended for good, is a
	-- requeue. Its staging area is kept for the next run (data_in finds
	-- the data there, verified, and pulls nothing). Anything else, or no
	-- answer from slurmctld, wipes.
	local _, _, staged_restarts = owner(conf, job_id)
	local restarts, state = job_restarts(conf, job_id)
	if restarts and staged_restarts and restarts > staged_restarts
	    and (state == "PENDING" or state == "COMPLETING" or state == "REQUEUED") then
		slurm.log_info("quai burst buffer: job %s is requeued (restart %d): %s kept for its next run",
		    job_id, restarts, dir)
		return slurm.SUCCESS
	end
	local ok, msg = wipe_area(conf, job_id)
	if not ok then
		return slurm.ERROR, msg
	end
	return slurm.SUCCESS
end

function slurm_bb_get_status(...)
	local conf, err = load_conf()
	if not conf then
		return slurm.ERROR, "quai burst buffer: " .. err .. "\n"
	end
	local _, out = sh("ls -1 " .. q(conf.stage_root) .. " 2>/dev/null | grep -c '^job-'")
	return slurm.SUCCESS, "quai burst buffer: " .. trim(out) .. " job staging area(s) under "
	    .. conf.stage_root .. "\n"
end
