// Helpers of every test script below (written once in xtask/src/postman/helpers.js; Postman
// runs each script on its own, so the generator puts them in front of each).
const body = () => pm.response.json();
const objectId = /^[0-9a-f]{24}$/;
const expectStatus = (code) =>
  pm.test(`answers ${code}`, () => pm.response.to.have.status(code));
// An error in the API's one shape, with its message and, for validation errors, its field.
const expectError = (code, message, field) => {
  expectStatus(code);
  pm.test(`says "${message}"${field ? ` about ${field}` : ''}`, () => {
    const errors = body().errors;
    pm.expect(errors).to.be.an('array').with.lengthOf(1);
    pm.expect(errors[0].message).to.eql(message);
    if (field) {
      pm.expect(errors[0].field).to.eql(field);
    } else {
      pm.expect(errors[0]).to.not.have.property('field');
    }
  });
};
// Events reach the other services a moment after a change: a step that waits for one sends
// its request again, 100 ms apart, until `ready()` holds, at most POLL_TRIES times. Returns
// true while it is trying again (the caller's checks wait for the last answer).
const POLL_TRIES = 100;
const retryUnless = (ready) => {
  const key = `tries ${pm.info.requestId}`;
  const tries = Number(pm.collectionVariables.get(key) || 0);
  let done = tries >= POLL_TRIES;
  try {
    done = done || ready();
  } catch (e) {
    // Not ready: the answer is not the one waited for yet.
  }
  if (done) {
    pm.collectionVariables.unset(key);
    return false;
  }
  pm.collectionVariables.set(key, tries + 1);
  postman.setNextRequest(pm.info.requestId);
  return true;
};
