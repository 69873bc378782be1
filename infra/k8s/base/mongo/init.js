// Brings one member of a service's MongoDB replica set into the set and makes sure of its users.
// Run by mongosh (`mongosh --nodb --quiet --file init.js`) after mongod starts: the postStart
// hook of each pod in Kubernetes, the health check in compose. Idempotent, so it runs on every
// start; it retries until MONGO_INIT_SECONDS pass, then fails (Kubernetes restarts the pod).
//
// mongod runs with --keyFile, so members authenticate to each other and clients must log in.
// The first member (MONGO_FIRST) initiates the set with itself and, through the localhost
// exception (no user exists yet), creates `root`. Every other member asks the set, as root, to
// add it, so scaling the StatefulSet up adds members. Each run also gives the service's user
// (MONGO_APP_USER, readWrite on its own database only) its current password.
//
// Environment: MONGO_SELF (this member, host:port as clients reach it), MONGO_FIRST,
// MONGO_REPLICA_SET, MONGO_ROOT_PASSWORD, MONGO_APP_USER, MONGO_APP_PASSWORD, MONGO_APP_DB,
// MONGO_INIT_SECONDS (default 120). Passwords are used inside URLs: hex or base64url only.

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === "") throw new Error(`${name} is not set`);
  return value;
};
const self = env("MONGO_SELF");
const first = env("MONGO_FIRST");
const replicaSet = env("MONGO_REPLICA_SET", "rs0");
const rootPassword = env("MONGO_ROOT_PASSWORD");
const appUser = env("MONGO_APP_USER");
const appPassword = env("MONGO_APP_PASSWORD");
const appDb = env("MONGO_APP_DB");
const deadline = Date.now() + 1000 * Number(env("MONGO_INIT_SECONDS", "120"));
const [, port] = self.split(":");

const local = () => new Mongo(`mongodb://127.0.0.1:${port}/?directConnection=true`);
const root = () =>
  new Mongo(`mongodb://root:${rootPassword}@${first}/admin?replicaSet=${replicaSet}`);
const hello = () => local().getDB("admin").runCommand({ hello: 1 });

// Retries `step` until it returns true or the deadline passes.
function until(what, step) {
  for (;;) {
    let reason = "not yet";
    try {
      if (step()) return;
    } catch (e) {
      reason = e.message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: ${reason}`);
    sleep(1000);
  }
}

until("mongod answers", () => hello().ok === 1);

if (hello().setName !== replicaSet) {
  if (self === first) {
    until("initiate the replica set", () => {
      const result = local()
        .getDB("admin")
        .runCommand({ replSetInitiate: { _id: replicaSet, members: [{ _id: 0, host: self }] } });
      // AlreadyInitialized: an earlier run got this far.
      if (result.ok !== 1 && result.code !== 23) throw new Error(result.errmsg);
      return true;
    });
  } else {
    until("join the replica set", () => {
      const admin = root().getDB("admin");
      const config = admin.runCommand({ replSetGetConfig: 1 }).config;
      if (!config.members.some((m) => m.host === self)) {
        config.members.push({ _id: Math.max(...config.members.map((m) => m._id)) + 1, host: self });
        config.version += 1;
        const result = admin.runCommand({ replSetReconfig: config });
        if (result.ok !== 1) throw new Error(result.errmsg);
      }
      return true;
    });
  }
}

until("root user", () => {
  try {
    return root().getDB("admin").runCommand({ ping: 1 }).ok === 1;
  } catch (e) {
    if (!/auth/i.test(e.message)) throw e;
  }
  // No root yet: only the primary of a new set may create it, through the localhost exception.
  if (!hello().isWritablePrimary) throw new Error("waiting to be primary to create root");
  const result = local()
    .getDB("admin")
    .runCommand({ createUser: "root", pwd: rootPassword, roles: ["root"] });
  if (result.ok !== 1) throw new Error(result.errmsg);
  return true;
});

until(`user ${appUser}`, () => {
  try {
    const app = new Mongo(
      `mongodb://${appUser}:${appPassword}@${first}/${appDb}?replicaSet=${replicaSet}`,
    );
    if (app.getDB(appDb).runCommand({ ping: 1 }).ok === 1) return true;
  } catch (e) {
    if (!/auth/i.test(e.message)) throw e;
  }
  const db = root().getDB(appDb);
  const user = { pwd: appPassword, roles: [{ role: "readWrite", db: appDb }] };
  const exists = db.runCommand({ usersInfo: appUser }).users.length > 0;
  const result = exists
    ? db.runCommand({ updateUser: appUser, ...user })
    : db.runCommand({ createUser: appUser, ...user });
  if (result.ok !== 1) throw new Error(result.errmsg);
  return true;
});

print(`${self}: member of ${replicaSet}, users root and ${appUser} in place`);
