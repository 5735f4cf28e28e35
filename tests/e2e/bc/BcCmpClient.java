/*
 * A BouncyCastle (1.72) CMP client for the end-to-end tests: one ir with signature or PBM
 * protection, then certConf, or one genm (RFC 9483 §4.3), over HTTPS (or plain HTTP for the
 * OpenSSL mock server). The messages follow the RFCs' descriptions, built with BouncyCastle's own
 * ASN.1 classes.
 *
 *   java BcCmpClient URL CA_PEM TLS_CERT TLS_KEY sig CERT_PEM KEY_PEM SUBJECT OUT_CERT RSP_DER [options]
 *   java BcCmpClient URL CA_PEM TLS_CERT TLS_KEY pbm REF SECRET_FILE SUBJECT OUT_CERT RSP_DER [options]
 *
 * TLS_CERT/TLS_KEY may be "-" (no TLS client certificate). Options:
 *   --bad-certhash     send a certConf whose certHash does not match the issued certificate
 *   --newkey FILE      use the key pair in FILE (PEM) instead of a fresh EC P-256 key
 *   --san-dns NAME     ask for a DNS subjectAltName
 *   --profile NAME     name a certificate profile (RFC 9483 §3.1: id-it-certProfile in generalInfo) in
 *                      the ir or genm; the certConf does not repeat it
 *   --genm TYPE        send a genm instead of an ir (SUBJECT is then "-", OUT_CERT an output prefix):
 *                      caCerts, rootCaCert (RFC 9483 §4.3.2, with --root), rootCaKeyUpdate (the drafts' request),
 *                      certReqTemplate, crlStatusList (with --crl-issuer)
 *   --root FILE        rootCaCert: the root CA certificate this client trusts (PEM); without it the
 *                      request names none
 *   --crl-issuer FILE  crlStatusList: the CA whose CRL is asked for (PEM; its name is the CRLSource)
 *
 * OUT_CERT receives the issued certificate, OUT_CERT.extracerts the ip's extraCerts (PEM). A genm
 * prints "genp N" and "itav OID LENGTH|absent" per answered ITAV and writes each value to
 * OUT_PREFIX.<i>.der; for rootCaCert and rootCaKeyUpdate it checks the answer as RFC 4210 §4.4 has
 * an end entity do and prints what it checked. RSP_DER receives the raw DER of the last response
 * received (also of an error). Exit status: 0 = certificate issued, checked and confirmed
 * (pkiconf), or genp received and checked; 1 = any failure (reason on stderr).
 */
import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.FileReader;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.OutputStreamWriter;
import java.math.BigInteger;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.Security;
import java.security.cert.CertPathValidator;
import java.security.cert.CertificateFactory;
import java.security.cert.PKIXParameters;
import java.security.cert.TrustAnchor;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Date;
import java.util.List;

import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

import org.bouncycastle.asn1.ASN1Encodable;
import org.bouncycastle.asn1.ASN1Encoding;
import org.bouncycastle.asn1.ASN1OctetString;
import org.bouncycastle.asn1.DERSequence;
import org.bouncycastle.asn1.DERUTF8String;
import org.bouncycastle.asn1.cmp.CMPCertificate;
import org.bouncycastle.asn1.cmp.CMPObjectIdentifiers;
import org.bouncycastle.asn1.cmp.CRLSource;
import org.bouncycastle.asn1.cmp.CRLStatus;
import org.bouncycastle.asn1.cmp.CertConfirmContent;
import org.bouncycastle.asn1.cmp.CertRepMessage;
import org.bouncycastle.asn1.cmp.CertResponse;
import org.bouncycastle.asn1.cmp.CertStatus;
import org.bouncycastle.asn1.cmp.ErrorMsgContent;
import org.bouncycastle.asn1.cmp.GenMsgContent;
import org.bouncycastle.asn1.cmp.GenRepContent;
import org.bouncycastle.asn1.cmp.InfoTypeAndValue;
import org.bouncycastle.asn1.cmp.PBMParameter;
import org.bouncycastle.asn1.cmp.PKIBody;
import org.bouncycastle.asn1.cmp.PKIHeader;
import org.bouncycastle.asn1.cmp.PKIMessage;
import org.bouncycastle.asn1.cmp.PKIStatusInfo;
import org.bouncycastle.asn1.cmp.RootCaKeyUpdateContent;
import org.bouncycastle.asn1.crmf.CertReqMessages;
import org.bouncycastle.asn1.nist.NISTObjectIdentifiers;
import org.bouncycastle.asn1.pkcs.PKCSObjectIdentifiers;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.asn1.x500.RDN;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.AlgorithmIdentifier;
import org.bouncycastle.asn1.x509.Certificate;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.SubjectKeyIdentifier;
import org.bouncycastle.asn1.x509.SubjectPublicKeyInfo;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.cmp.CertificateConfirmationContent;
import org.bouncycastle.cert.cmp.CertificateConfirmationContentBuilder;
import org.bouncycastle.cert.cmp.GeneralPKIMessage;
import org.bouncycastle.cert.cmp.ProtectedPKIMessage;
import org.bouncycastle.cert.cmp.ProtectedPKIMessageBuilder;
import org.bouncycastle.cert.crmf.CertificateRequestMessage;
import org.bouncycastle.cert.crmf.PKMACBuilder;
import org.bouncycastle.cert.crmf.jcajce.JcaCertificateRequestMessageBuilder;
import org.bouncycastle.cert.crmf.jcajce.JcePKMACValuesCalculator;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.openssl.PEMKeyPair;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;
import org.bouncycastle.operator.ContentSigner;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;
import org.bouncycastle.operator.jcajce.JcaContentVerifierProviderBuilder;
import org.bouncycastle.operator.jcajce.JcaDigestCalculatorProviderBuilder;

public final class BcCmpClient {
    /* RFC 9483 §4.1.1 PBM for the test: SHA-256 OWF, 10 000 iterations, HMAC-SHA256. */
    private static final int PBM_ITERATIONS = 10000;
    /* what we accept in a response's PBMParameter: OpenSSL 3.0 uses 500 */
    private static final int PBM_MAX_ITERATIONS = 100000;
    private static final int MAX_RESPONSE = 1 << 20;

    private final SecureRandom rnd = new SecureRandom();
    private String url;
    private SSLContext ssl;
    private X509Certificate trustAnchor;
    private boolean pbm;
    private X509Certificate cmpCert;
    private PrivateKey cmpKey;
    private String pbmRef;
    private char[] pbmSecret;
    private byte[] lastResponse;
    private String rspOut;
    private String profile;

    private static final class Failure extends Exception {
        Failure(String msg) {
            super(msg);
        }
    }

    public static void main(String[] args) {
        Security.addProvider(new BouncyCastleProvider());
        BcCmpClient c = new BcCmpClient();
        try {
            c.run(args);
        } catch (Exception e) {
            System.err.println("BcCmpClient: " + (e instanceof Failure ? e.getMessage() : e.toString()));
            c.saveResponse();
            System.exit(1);
        }
        c.saveResponse();
        System.exit(0);
    }

    private void saveResponse() {
        if (rspOut == null || lastResponse == null)
            return;
        try (OutputStream o = new FileOutputStream(rspOut)) {
            o.write(lastResponse);
        } catch (Exception e) {
            System.err.println("BcCmpClient: cannot write " + rspOut + ": " + e);
        }
    }

    private void run(String[] a) throws Exception {
        if (a.length < 10)
            throw new Failure("usage: URL CA TLS_CERT TLS_KEY sig|pbm CERT|REF KEY|SECRET SUBJECT OUT_CERT RSP_DER"
                              + " [--bad-certhash] [--newkey F] [--san-dns N]");
        url = a[0];
        trustAnchor = readCert(a[1]);
        rspOut = a[9];
        boolean badHash = false;
        String newKeyFile = null, sanDns = null, genmType = null, rootFile = null, crlIssuer = null;
        for (int i = 10; i < a.length; i++) {
            if (a[i].equals("--bad-certhash"))
                badHash = true;
            else if (a[i].equals("--newkey") && i + 1 < a.length)
                newKeyFile = a[++i];
            else if (a[i].equals("--san-dns") && i + 1 < a.length)
                sanDns = a[++i];
            else if (a[i].equals("--profile") && i + 1 < a.length)
                profile = a[++i];
            else if (a[i].equals("--genm") && i + 1 < a.length)
                genmType = a[++i];
            else if (a[i].equals("--root") && i + 1 < a.length)
                rootFile = a[++i];
            else if (a[i].equals("--crl-issuer") && i + 1 < a.length)
                crlIssuer = a[++i];
            else
                throw new Failure("unknown option " + a[i]);
        }
        ssl = buildSsl(trustAnchor, a[2], a[3]);
        if (a[4].equals("sig")) {
            cmpCert = readCert(a[5]);
            cmpKey = readKeyPair(a[6]).getPrivate();
        } else if (a[4].equals("pbm")) {
            pbm = true;
            pbmRef = a[5];
            pbmSecret = new String(Files.readAllBytes(Paths.get(a[6])), StandardCharsets.UTF_8).trim().toCharArray();
        } else {
            throw new Failure("mode must be sig or pbm");
        }
        if (genmType != null) {
            if (!a[7].equals("-"))
                throw new Failure("with --genm, SUBJECT must be \"-\"");
            genm(genmType, rootFile != null ? readCert(rootFile) : null, crlIssuer, a[8]);
            return;
        }
        KeyPair kp = newKeyFile != null ? readKeyPair(newKeyFile) : generateKey();
        X509CertificateHolder issued = enrol(kp, a[7], sanDns, a[8], badHash);
        System.err.println("BcCmpClient: issued and confirmed: " + issued.getSubject());
    }

    /* ir -> ip -> certConf -> pkiconf; returns the issued certificate */
    private X509CertificateHolder enrol(KeyPair kp, String subject, String sanDns, String outCert, boolean badHash)
        throws Exception {
        JcaCertificateRequestMessageBuilder crmb = new JcaCertificateRequestMessageBuilder(BigInteger.ZERO);
        crmb.setSubject(new X500Name(subject));
        crmb.setPublicKey(kp.getPublic());
        if (sanDns != null)
            crmb.addExtension(Extension.subjectAlternativeName, false,
                              new GeneralNames(new GeneralName(GeneralName.dNSName, sanDns)));
        crmb.setProofOfPossessionSigningKeySigner(
            new JcaContentSignerBuilder("SHA256withECDSA").setProvider("BC").build(kp.getPrivate()));
        CertificateRequestMessage crm = crmb.build();

        byte[] tid = random(16), nonce = random(16);
        PKIBody irBody = new PKIBody(PKIBody.TYPE_INIT_REQ, new CertReqMessages(crm.toASN1Structure()));
        ProtectedPKIMessage ip = exchange(irBody, tid, nonce, null, PKIBody.TYPE_INIT_REP);

        CertRepMessage rep = CertRepMessage.getInstance(ip.getBody().getContent());
        CertResponse[] rs = rep.getResponse();
        if (rs.length != 1)
            throw new Failure("ip carries " + rs.length + " responses, expected 1");
        CertResponse r = rs[0];
        if (!r.getCertReqId().getValue().equals(BigInteger.ZERO))
            throw new Failure("ip certReqId " + r.getCertReqId().getValue() + ", expected 0");
        int status = r.getStatus().getStatus().intValue();
        if (status != 0 && status != 1)
            throw new Failure("ip status " + describe(r.getStatus()));
        if (r.getCertifiedKeyPair() == null || r.getCertifiedKeyPair().getCertOrEncCert().getCertificate() == null)
            throw new Failure("ip carries no certificate");
        X509CertificateHolder cert = new X509CertificateHolder(
            r.getCertifiedKeyPair().getCertOrEncCert().getCertificate().getX509v3PKCert());
        SubjectPublicKeyInfo want = SubjectPublicKeyInfo.getInstance(kp.getPublic().getEncoded());
        if (!cert.getSubjectPublicKeyInfo().equals(want))
            throw new Failure("issued certificate does not certify our public key");
        try (OutputStreamWriter w = new OutputStreamWriter(new FileOutputStream(outCert), StandardCharsets.US_ASCII)) {
            w.write(pem("CERTIFICATE", cert.getEncoded()));
        }
        /* the ip's extraCerts, for the caller to build the new certificate's chain */
        try (OutputStreamWriter w = new OutputStreamWriter(new FileOutputStream(outCert + ".extracerts"),
                                                           StandardCharsets.US_ASCII)) {
            for (X509CertificateHolder c : ip.getCertificates())
                w.write(pem("CERTIFICATE", c.getEncoded()));
        }
        if (implicitConfirmGranted(ip.getHeader()))
            return cert;

        PKIBody confBody = new PKIBody(PKIBody.TYPE_CERT_CONFIRM, certConf(cert, badHash));
        ProtectedPKIMessage conf = exchange(confBody, tid, random(16),
                                            ip.getHeader().getSenderNonce().getOctets(), PKIBody.TYPE_CONFIRM);
        if (conf == null)
            throw new Failure("no pkiconf");
        return cert;
    }

    /* RFC 9483 §4.3: one infoType per genm, its value as the section describes the request. */
    private void genm(String type, X509Certificate root, String crlIssuer, String outPrefix) throws Exception {
        InfoTypeAndValue req;
        switch (type) {
        case "caCerts": /* RFC 9483 §4.3.1: no value */
            req = new InfoTypeAndValue(CMPObjectIdentifiers.id_it_caCerts);
            break;
        case "rootCaCert": /* RFC 9483 §4.3.2: RootCaCertValue ::= CMPCertificate, the root the EE trusts */
            req = root == null ? new InfoTypeAndValue(CMPObjectIdentifiers.id_it_rootCaCert)
                               : new InfoTypeAndValue(CMPObjectIdentifiers.id_it_rootCaCert,
                                                      new CMPCertificate(Certificate.getInstance(root.getEncoded())));
            break;
        case "rootCaKeyUpdate": /* drafts of RFC 9483 asked with the answer's infoType and no value */
            req = new InfoTypeAndValue(CMPObjectIdentifiers.id_it_rootCaKeyUpdate);
            break;
        case "certReqTemplate": /* RFC 9483 §4.3.3: no value */
            req = new InfoTypeAndValue(CMPObjectIdentifiers.id_it_certReqTemplate);
            break;
        case "crlStatusList": { /* RFC 9483 §4.3.4: SEQUENCE OF CRLStatus { source, thisUpdate OPTIONAL } */
            if (crlIssuer == null)
                throw new Failure("crlStatusList needs --crl-issuer");
            X500Name issuer = X500Name.getInstance(readCert(crlIssuer).getSubjectX500Principal().getEncoded());
            CRLSource src = new CRLSource(null, new GeneralNames(new GeneralName(issuer)));
            req = new InfoTypeAndValue(CMPObjectIdentifiers.id_it_crlStatusList, new DERSequence(new CRLStatus(src, null)));
            break;
        }
        default:
            throw new Failure("unknown genm type " + type);
        }
        PKIBody body = new PKIBody(PKIBody.TYPE_GEN_MSG, new GenMsgContent(req));
        ProtectedPKIMessage rsp = exchange(body, random(16), random(16), null, PKIBody.TYPE_GEN_REP);
        InfoTypeAndValue[] got = GenRepContent.getInstance(rsp.getBody().getContent()).toInfoTypeAndValueArray();
        System.out.println("genp " + got.length);
        for (int i = 0; i < got.length; i++) {
            ASN1Encodable v = got[i].getInfoValue();
            byte[] der = v == null ? null : v.toASN1Primitive().getEncoded(ASN1Encoding.DER);
            System.out.println("itav " + got[i].getInfoType().getId() + " " + (der == null ? "absent" : der.length));
            if (der != null)
                try (OutputStream o = new FileOutputStream(outPrefix + "." + i + ".der")) {
                    o.write(der);
                }
        }
        if (type.startsWith("rootCa"))
            checkRootUpdate(got, root);
    }

    /*
     * RFC 9483 §4.3.2 and RFC 4210 §4.4, as the end entity sees the answer: one id-it-rootCaKeyUpdate;
     * if it has a value, newWithNew is self-signed, newWithOld certifies the new key and is signed by
     * the root we trust, and oldWithNew, if there, certifies our root's key and is signed by the new one.
     */
    private void checkRootUpdate(InfoTypeAndValue[] got, X509Certificate root) throws Exception {
        if (got.length != 1 || !got[0].getInfoType().equals(CMPObjectIdentifiers.id_it_rootCaKeyUpdate))
            throw new Failure("the genp does not hold exactly one id-it-rootCaKeyUpdate");
        if (got[0].getInfoValue() == null) {
            System.out.println("rootCaKeyUpdate absent");
            return;
        }
        RootCaKeyUpdateContent c = RootCaKeyUpdateContent.getInstance(got[0].getInfoValue());
        X509CertificateHolder nwn = holder(c.getNewWithNew()), nwo = holder(c.getNewWithOld()),
                              own = holder(c.getOldWithNew());
        JcaContentVerifierProviderBuilder vb = new JcaContentVerifierProviderBuilder().setProvider("BC");
        if (nwn == null || !nwn.isSignatureValid(vb.build(nwn)))
            throw new Failure("newWithNew is missing or not self-signed");
        if (nwo == null || !nwo.getSubjectPublicKeyInfo().equals(nwn.getSubjectPublicKeyInfo()))
            throw new Failure("newWithOld is missing or does not certify the new root's key");
        if (root != null && !nwo.isSignatureValid(vb.build(root)))
            throw new Failure("newWithOld is not signed by the root we trust");
        System.out.println("rootCaKeyUpdate newWithNew " + nwn.getSubject());
        System.out.println("newWithOld " + (root != null ? "signed by our root" : "present"));
        if (own != null) {
            if (!own.isSignatureValid(vb.build(nwn)))
                throw new Failure("oldWithNew is not signed by the new root");
            if (root != null && !own.getSubjectPublicKeyInfo().equals(
                                    SubjectPublicKeyInfo.getInstance(root.getPublicKey().getEncoded())))
                throw new Failure("oldWithNew does not certify our root's key");
        }
        System.out.println("oldWithNew " + (own == null ? "absent" : "signed by the new root"));
    }

    private static X509CertificateHolder holder(CMPCertificate c) {
        return c == null ? null : new X509CertificateHolder(c.getX509v3PKCert());
    }

    private CertConfirmContent certConf(X509CertificateHolder cert, boolean badHash) throws Exception {
        if (!badHash) {
            CertificateConfirmationContent c = new CertificateConfirmationContentBuilder()
                .addAcceptedCertificate(cert, BigInteger.ZERO)
                .build(new JcaDigestCalculatorProviderBuilder().setProvider("BC").build());
            return c.toASN1Structure();
        }
        byte[] wrong = new byte[32];
        rnd.nextBytes(wrong);
        return CertConfirmContent.getInstance(new DERSequence(new CertStatus(wrong, BigInteger.ZERO)));
    }

    private static boolean implicitConfirmGranted(PKIHeader h) {
        InfoTypeAndValue[] gi = h.getGeneralInfo();
        if (gi == null)
            return false;
        for (InfoTypeAndValue i : gi)
            if (i.getInfoType().equals(CMPObjectIdentifiers.it_implicitConfirm))
                return true;
        return false;
    }

    /* Sends one protected request and returns the verified response of the expected type. */
    private ProtectedPKIMessage exchange(PKIBody body, byte[] tid, byte[] nonce, byte[] recipNonce, int wantType)
        throws Exception {
        ProtectedPKIMessageBuilder b = new ProtectedPKIMessageBuilder(sender(), new GeneralName(new X500Name(new RDN[0])));
        b.setTransactionID(tid).setSenderNonce(nonce).setMessageTime(new Date()).setBody(body);
        if (recipNonce != null)
            b.setRecipNonce(recipNonce);
        /* RFC 9483 §3.1: certProfile, a SEQUENCE OF UTF8String, names the profile in the request */
        if (profile != null && (body.getType() == PKIBody.TYPE_INIT_REQ || body.getType() == PKIBody.TYPE_GEN_MSG))
            b.addGeneralInfo(new InfoTypeAndValue(CMPObjectIdentifiers.id_it_certProfile,
                                                  new DERSequence(new DERUTF8String(profile))));
        ProtectedPKIMessage req;
        if (pbm) {
            b.setSenderKID(pbmRef.getBytes(StandardCharsets.UTF_8));
            PKMACBuilder mb = new PKMACBuilder(new JcePKMACValuesCalculator().setProvider("BC"));
            mb.setParameters(new PBMParameter(random(16), new AlgorithmIdentifier(NISTObjectIdentifiers.id_sha256),
                                              PBM_ITERATIONS,
                                              new AlgorithmIdentifier(PKCSObjectIdentifiers.id_hmacWithSHA256)));
            req = b.build(mb.build(pbmSecret));
        } else {
            byte[] skid = skid(cmpCert);
            if (skid != null)
                b.setSenderKID(skid);
            b.addCMPCertificate(new X509CertificateHolder(cmpCert.getEncoded()));
            ContentSigner s = new JcaContentSignerBuilder("SHA256withECDSA").setProvider("BC").build(cmpKey);
            req = b.build(s);
        }
        lastResponse = post(req.toASN1Structure().getEncoded());
        GeneralPKIMessage g = new GeneralPKIMessage(PKIMessage.getInstance(lastResponse));
        PKIHeader h = g.getHeader();
        if (h.getTransactionID() == null || !Arrays.equals(h.getTransactionID().getOctets(), tid))
            throw new Failure("response transactionID does not match");
        if (h.getRecipNonce() == null || !Arrays.equals(h.getRecipNonce().getOctets(), nonce))
            throw new Failure("response recipNonce does not match our senderNonce");
        if (!g.hasProtection())
            throw new Failure("response is not protected");
        ProtectedPKIMessage rsp = new ProtectedPKIMessage(g);
        verifyProtection(rsp);
        int type = g.getBody().getType();
        if (type == PKIBody.TYPE_ERROR) {
            ErrorMsgContent e = ErrorMsgContent.getInstance(g.getBody().getContent());
            throw new Failure("error response: " + describe(e.getPKIStatusInfo()));
        }
        if (type != wantType)
            throw new Failure("response body type " + type + ", expected " + wantType);
        return rsp;
    }

    private GeneralName sender() {
        if (pbm)
            return new GeneralName(new X500Name("CN=" + pbmRef));
        return new GeneralName(X500Name.getInstance(cmpCert.getSubjectX500Principal().getEncoded()));
    }

    /* MAC with our secret, or a signature by a certificate that chains to the trust anchor. */
    private void verifyProtection(ProtectedPKIMessage rsp) throws Exception {
        if (rsp.hasPasswordBasedMacProtection()) {
            if (!pbm)
                throw new Failure("MAC-protected response to a signed request");
            PKMACBuilder mb = new PKMACBuilder(new JcePKMACValuesCalculator().setProvider("BC"), PBM_MAX_ITERATIONS);
            if (!rsp.verify(mb, pbmSecret))
                throw new Failure("response MAC does not verify");
            return;
        }
        X509CertificateHolder[] certs = rsp.getCertificates();
        if (certs.length == 0)
            throw new Failure("signed response without extraCerts");
        X500Name snd = X500Name.getInstance(rsp.getHeader().getSender().getName());
        X509CertificateHolder signer = null;
        for (X509CertificateHolder c : certs)
            if (c.getSubject().equals(snd) && rsp.verify(new JcaContentVerifierProviderBuilder().setProvider("BC").build(c))) {
                signer = c;
                break;
            }
        if (signer == null)
            throw new Failure("no certificate in extraCerts verifies the response signature of " + snd);
        validateChain(signer, certs);
    }

    private void validateChain(X509CertificateHolder leaf, X509CertificateHolder[] pool) throws Exception {
        JcaX509CertificateConverter conv = new JcaX509CertificateConverter().setProvider("BC");
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        List<X509Certificate> path = new ArrayList<>();
        X509CertificateHolder cur = leaf;
        X500Name anchor = X500Name.getInstance(trustAnchor.getSubjectX500Principal().getEncoded());
        for (int depth = 0; depth < 8 && !cur.getIssuer().equals(anchor); depth++) {
            path.add(conv.getCertificate(cur));
            X509CertificateHolder next = null;
            for (X509CertificateHolder c : pool)
                if (c.getSubject().equals(cur.getIssuer()) && !c.equals(cur))
                    next = c;
            if (next == null)
                throw new Failure("cannot build the signer chain from extraCerts");
            cur = next;
        }
        path.add(conv.getCertificate(cur));
        PKIXParameters p = new PKIXParameters(Collections.singleton(new TrustAnchor(trustAnchor, null)));
        p.setRevocationEnabled(false);
        CertPathValidator.getInstance("PKIX").validate(cf.generateCertPath(path), p);
    }

    private byte[] post(byte[] der) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URL(url).openConnection();
        if (c instanceof HttpsURLConnection)
            ((HttpsURLConnection) c).setSSLSocketFactory(ssl.getSocketFactory());
        c.setConnectTimeout(10000);
        c.setReadTimeout(60000);
        c.setDoOutput(true);
        c.setRequestMethod("POST");
        c.setRequestProperty("Content-Type", "application/pkixcmp");
        c.setFixedLengthStreamingMode(der.length);
        try (OutputStream o = c.getOutputStream()) {
            o.write(der);
        }
        int code = c.getResponseCode();
        if (code != 200)
            throw new Failure("HTTP " + code + " " + c.getResponseMessage());
        String ct = c.getContentType();
        if (ct == null || !ct.equalsIgnoreCase("application/pkixcmp"))
            throw new Failure("response Content-Type " + ct);
        try (InputStream in = c.getInputStream()) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buf = new byte[8192];
            int n;
            while ((n = in.read(buf)) > 0) {
                out.write(buf, 0, n);
                if (out.size() > MAX_RESPONSE)
                    throw new Failure("response over " + MAX_RESPONSE + " bytes");
            }
            return out.toByteArray();
        }
    }

    private static SSLContext buildSsl(X509Certificate ca, String certFile, String keyFile) throws Exception {
        KeyStore ts = KeyStore.getInstance("PKCS12");
        ts.load(null, null);
        ts.setCertificateEntry("ca", ca);
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ts);
        KeyManagerFactory kmf = null;
        if (!certFile.equals("-")) {
            char[] pw = "changeit".toCharArray();
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(null, null);
            ks.setKeyEntry("client", readKeyPair(keyFile).getPrivate(), pw, new X509Certificate[] {readCert(certFile)});
            kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, pw);
        }
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf == null ? null : kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        return ctx;
    }

    private static X509Certificate readCert(String file) throws Exception {
        try (InputStream in = new FileInputStream(file)) {
            return (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
        }
    }

    private static KeyPair readKeyPair(String file) throws Exception {
        JcaPEMKeyConverter conv = new JcaPEMKeyConverter().setProvider("BC");
        try (PEMParser p = new PEMParser(new FileReader(file))) {
            Object o = p.readObject();
            if (o instanceof PEMKeyPair)
                return conv.getKeyPair((PEMKeyPair) o);
            if (o instanceof PrivateKeyInfo) {
                PrivateKey k = conv.getPrivateKey((PrivateKeyInfo) o);
                return new KeyPair(publicOf(k), k);
            }
            throw new Failure(file + ": not a PEM private key");
        }
    }

    /* The public half of an EC private key: Q = d*G, through BC's key spec. */
    private static java.security.PublicKey publicOf(PrivateKey k) throws Exception {
        org.bouncycastle.jce.interfaces.ECPrivateKey ek = (org.bouncycastle.jce.interfaces.ECPrivateKey) k;
        org.bouncycastle.jce.spec.ECParameterSpec spec = ek.getParameters();
        org.bouncycastle.math.ec.ECPoint q = spec.getG().multiply(ek.getD()).normalize();
        return java.security.KeyFactory.getInstance("EC", "BC")
            .generatePublic(new org.bouncycastle.jce.spec.ECPublicKeySpec(q, spec));
    }

    private KeyPair generateKey() throws Exception {
        KeyPairGenerator g = KeyPairGenerator.getInstance("EC", "BC");
        g.initialize(new ECGenParameterSpec("secp256r1"), rnd);
        return g.generateKeyPair();
    }

    private static byte[] skid(X509Certificate c) {
        byte[] ext = c.getExtensionValue(Extension.subjectKeyIdentifier.getId());
        if (ext == null)
            return null;
        return SubjectKeyIdentifier.getInstance(ASN1OctetString.getInstance(ext).getOctets()).getKeyIdentifier();
    }

    private byte[] random(int n) {
        byte[] b = new byte[n];
        rnd.nextBytes(b);
        return b;
    }

    private static String describe(PKIStatusInfo si) {
        StringBuilder sb = new StringBuilder("status=" + si.getStatus());
        if (si.getFailInfo() != null)
            sb.append(" failInfo=0x").append(si.getFailInfo().getBytes().length > 0
                                             ? new BigInteger(1, si.getFailInfo().getBytes()).toString(16) : "0");
        if (si.getStatusString() != null)
            for (int i = 0; i < si.getStatusString().size(); i++)
                sb.append(" \"").append(si.getStatusString().getStringAtUTF8(i).getString()).append('"');
        return sb.toString();
    }

    private static String pem(String type, byte[] der) {
        String b64 = java.util.Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(der);
        return "-----BEGIN " + type + "-----\n" + b64 + "\n-----END " + type + "-----\n";
    }
}
