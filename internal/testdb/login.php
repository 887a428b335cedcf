<?php
// Can this person log in to the PUQcloud 1.3.0 client area? The decision of the panel's
// templates/client/puqcloud/Controllers/AuthController.php postLogin, re-written here (not copied)
// with what it calls: the request middleware Laravel 12 runs first (TrimStrings,
// ConvertEmptyStringsToNull), its validator rules, app/Models/User.php's `retrieved` hook,
// Laravel's bcrypt check (Illuminate\Hashing\BcryptHasher::check), app/Models/Verification.php's
// confirmationVerifyCode, and robthree/twofactorauth 3.0.2's TOTP check (Composer packages cannot
// be installed here, so its rules are re-implemented below).
//
// Run by internal/testdb/login.go; the database is read by Go, because PHP here has no MySQL
// driver. Protocol, one JSON document per line:
//   stdin  1: {"email", "password", "code" (null: no code sent), "now" (unix seconds), "timezone"}
//   stdout 1: {"lookup": email} to ask for the rows, or {"result": ...} when the request is refused
//             before the database is read
//   stdin  2: {"user": null | {"password", "status", "two_factor", "disable"},
//              "verifications": [{"type", "current_email", "secret", "verified", "default",
//                                 "expires_at" (unix seconds | null)}, ...]}
//             in the order the database returns the user's rows; current_email is the database's
//             own comparison of type = 'email' AND value = users.email (its collation decides)
//   stdout 2: {"result": {"ok", "status", "message", "two_factor", "method"}}
// A failure of the script itself is {"error": "..."}. Nothing here prints a password, a hash, a
// code or a seed: they arrive on stdin and only the decision leaves.
//
// Read-only: the panel writes during a login (the hook's verification row and email_verified,
// status = 'active', activity rows, a rehash at another cost); this script only decides.

declare(strict_types=1);

/** A refusal the panel answers with an HTTP error, as postLogin's JSON responses. */
final class Refused extends Exception
{
    public function __construct(public readonly int $status, string $message)
    {
        parent::__construct($message);
    }
}

/**
 * An exception postLogin does not catch, so Laravel answers 500 ("Server Error" unless
 * APP_DEBUG): the hasher's RuntimeException, robthree's TwoFactorAuthException.
 */
final class Uncaught extends Exception
{
}

const TOTP_PERIOD = 30;
const TOTP_DIGITS = 6;
const TOTP_DISCREPANCY = 1; // TwoFactorAuth::verifyCode's default window: one period either side
const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function main(): void
{
    $in = fopen('php://stdin', 'r');
    $request = readDocument($in);
    $state = ['two_factor' => false, 'method' => ''];
    try {
        $form = middleware($request);
        validate($form);
        reply(['lookup' => $form['email']]);
        $rows = readDocument($in);
        $result = postLogin($form, $rows, (int) $request['now'], (string) $request['timezone'], $state);
    } catch (Refused $e) {
        $result = refusal($e->status, $e->getMessage(), $state);
    } catch (Uncaught $e) {
        $result = refusal(500, $e->getMessage(), $state);
    }
    reply(['result' => $result]);
}

/** @return array<string, mixed> */
function readDocument($in): array
{
    $line = fgets($in);
    if ($line === false) {
        throw new LogicException('stdin closed early');
    }
    return json_decode($line, true, 16, JSON_THROW_ON_ERROR);
}

function reply(array $doc): void
{
    echo json_encode($doc, JSON_THROW_ON_ERROR), "\n";
    flush();
}

function refusal(int $status, string $message, array $state): array
{
    return ['ok' => false, 'status' => $status, 'message' => $message] + $state;
}

/**
 * Laravel 12's global middleware on the form: TrimStrings (every field but password) and
 * ConvertEmptyStringsToNull. A code field that was sent stays present even when it becomes null.
 */
function middleware(array $request): array
{
    $trim = static fn (?string $v): ?string => $v === null ? null : preg_replace('~^[\s\x{FEFF}\x{200B}]+|[\s\x{FEFF}\x{200B}]+$~u', '', $v);
    $null = static fn (?string $v): ?string => $v === '' ? null : $v;
    return [
        'email' => $null($trim($request['email'])),
        'password' => $null($request['password']),
        'has_code' => array_key_exists('code', $request) && $request['code'] !== null,
        'code' => $null($trim($request['code'] ?? null)),
    ];
}

/** postLogin's Validator: email required|email, password required|string|min:6. */
function validate(array $form): void
{
    if ($form['email'] === null) {
        throw new Refused(422, 'Email is required');
    }
    // Laravel's `email` rule is egulias' RFCValidation; this is its coarse part: one @ with
    // something on either side and no whitespace.
    if (preg_match('/^[^@\s]+@[^@\s]+$/u', $form['email']) !== 1) {
        throw new Refused(422, 'Invalid email format');
    }
    if ($form['password'] === null) {
        throw new Refused(422, 'Password is required');
    }
    // min:6 on a string counts characters (mb_strlen), not bytes.
    if (preg_match_all('/./us', $form['password']) < 6) {
        throw new Refused(422, 'Password must be at least 6 characters');
    }
}

function postLogin(array $form, array $rows, int $now, string $timezone, array &$state): array
{
    $user = $rows['user'];
    $verifications = $rows['verifications'];
    if ($user !== null) {
        $verifications = retrievedHook($verifications, $now);
    }
    if ($user === null || !bcryptCheck($form['password'], (string) $user['password'])) {
        throw new Refused(401, 'Invalid email or password');
    }
    if ($user['two_factor']) {
        $state['two_factor'] = true;
        $verification = null;
        foreach ($verifications as $v) {
            if ((int) $v['default'] === 1) { // where('default', true)->first()
                $verification = $v;
                break;
            }
        }
        if ($verification === null) {
            // As in postLogin; the retrieved hook above always leaves a default row, so a
            // login never gets here.
            throw new Refused(404, 'Verification method for two-factor authentication not set');
        }
        $state['method'] = (string) $verification['type'];
        if (!$form['has_code']) {
            // The panel sends an email code (verified rows only) or prompts for the app's code,
            // and answers 200 without logging anyone in.
            return ['ok' => false, 'status' => 200, 'message' => ''] + $state;
        }
        if (!confirmationVerifyCode($verification, (string) $form['code'], $now, $timezone)) {
            throw new Refused(422, 'Verification failed');
        }
    }
    // Auth::attempt finds the same user and checks the same password; then postLogin logs the
    // user out again when disabled. $user['status'] is not checked: the panel sets it to
    // 'active' here, whatever it was.
    if ($user['disable']) {
        throw new Refused(401, 'Your account is disabled');
    }
    return ['ok' => true, 'status' => 200, 'message' => 'Successful authorization'] + $state;
}

/**
 * User's `retrieved` hook, run by User::where('email')->first() before anything is checked:
 * an email verification row for the current address is created when missing (unverified, not
 * default), and made the default when the user has no default row.
 */
function retrievedHook(array $verifications, int $now): array
{
    $current = null;
    foreach ($verifications as $i => $v) {
        if ($v['current_email']) {
            $current = $i;
            break;
        }
    }
    if ($current === null) {
        $verifications[] = ['type' => 'email', 'current_email' => true, 'secret' => (string) random_int(100000, 999999),
            'verified' => 0, 'default' => 0, 'expires_at' => $now];
        $current = array_key_last($verifications);
    }
    foreach ($verifications as $v) {
        if ((int) $v['default'] === 1) {
            return $verifications;
        }
    }
    $verifications[$current]['default'] = 1;
    return $verifications;
}

/**
 * Hash::check with Laravel 12's bcrypt driver and its default verify = true: an empty hash is
 * no match; a hash PHP does not recognise as bcrypt ($2a$, $2b$: only $2y$ is) throws.
 */
function bcryptCheck(#[SensitiveParameter] string $value, #[SensitiveParameter] string $hash): bool
{
    if ($hash === '') {
        return false;
    }
    if (password_get_info($hash)['algoName'] !== 'bcrypt') {
        throw new Uncaught('This password does not use the Bcrypt algorithm.');
    }
    return password_verify($value, $hash);
}

/** Verification::confirmationVerifyCode: only a verified row accepts a code. */
function confirmationVerifyCode(array $v, #[SensitiveParameter] string $code, int $now, string $timezone): bool
{
    if (!$v['verified']) {
        return false;
    }
    if ($v['type'] == 'email') {
        // The emailed code: the panel compares with ==, and needs expires_at in the future as
        // the panel reads it (the stored text, in APP_TIMEZONE).
        if ($v['expires_at'] === null) {
            return false;
        }
        $expires = new DateTimeImmutable(gmdate('Y-m-d H:i:s', (int) $v['expires_at']), new DateTimeZone($timezone));
        return $v['secret'] == $code && $expires->getTimestamp() > $now;
    }
    if ($v['type'] == 'totp') {
        return totpVerify((string) $v['secret'], $code, $now);
    }
    return false;
}

/** TwoFactorAuth::verifyCode: every code of the window is computed and compared in constant time. */
function totpVerify(#[SensitiveParameter] string $secret, #[SensitiveParameter] string $code, int $now): bool
{
    $key = base32Decode($secret);
    $matched = 0;
    for ($i = -TOTP_DISCREPANCY; $i <= TOTP_DISCREPANCY; $i++) {
        $slice = intdiv($now + $i * TOTP_PERIOD, TOTP_PERIOD);
        $matched = hash_equals(totpCode($key, $slice), $code) ? $slice : $matched;
    }
    return $matched > 0;
}

/** RFC 6238 with SHA1 and 6 digits: HOTP of the time slice. */
function totpCode(#[SensitiveParameter] string $key, int $slice): string
{
    $mac = hash_hmac('sha1', pack('J', $slice), $key, true);
    $offset = ord($mac[19]) & 0x0F;
    $value = unpack('N', substr($mac, $offset, 4))[1] & 0x7FFFFFFF;
    return str_pad((string) ($value % 10 ** TOTP_DIGITS), TOTP_DIGITS, '0', STR_PAD_LEFT);
}

/**
 * robthree's base32 decoder: only A-Z, 2-7 and = (anywhere, ignored) are accepted; anything
 * else, lowercase included, throws. Trailing bits short of a byte are dropped.
 */
function base32Decode(#[SensitiveParameter] string $value): string
{
    if (strspn($value, BASE32_ALPHABET . '=') !== strlen($value)) {
        throw new Uncaught('Invalid base32 string');
    }
    $out = '';
    $buffer = 0;
    $bits = 0;
    foreach (str_split(str_replace('=', '', $value)) as $char) {
        if ($char === '') {
            continue;
        }
        $buffer = ($buffer << 5) | strpos(BASE32_ALPHABET, $char);
        $bits += 5;
        if ($bits >= 8) {
            $bits -= 8;
            $out .= chr(($buffer >> $bits) & 0xFF);
            $buffer &= (1 << $bits) - 1;
        }
    }
    return $out;
}

// A notice or warning (a missing field, say) is a failure of the script, never a decision.
set_error_handler(static function (int $severity, string $message, string $file, int $line): bool {
    throw new ErrorException($message, 0, $severity, $file, $line);
});

try {
    main();
} catch (Throwable $e) {
    reply(['error' => get_class($e) . ': ' . $e->getMessage()]);
    exit(1);
}
